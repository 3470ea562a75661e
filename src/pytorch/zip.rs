//! The entries of a zip archive as `torch.save` writes them: stored, not compressed (PyTorch's
//! writer never deflates), with zip64 records where the archive passes 4 GiB. Only what reading
//! a checkpoint needs: the central directory's names, sizes and offsets. Every offset is checked,
//! so a truncated or corrupt file is an error naming what is wrong, never a panic.

use crate::error::{DrConvError, Result};

const EOCD: u32 = 0x0605_4b50;
const EOCD64: u32 = 0x0606_4b50;
const EOCD64_LOCATOR: u32 = 0x0706_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

/// One stored entry: its name and its bytes.
pub struct Entry<'a> {
    pub name: String,
    pub data: &'a [u8],
}

fn bad(what: String) -> DrConvError {
    DrConvError::Weights(format!("not a valid PyTorch checkpoint (zip): {what}"))
}

/// The `N` bytes at `at` (an offset the file may have given: no overflow).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> Result<[u8; N]> {
    let s = b.get(at..).and_then(|s| s.get(..N));
    let s = s.ok_or_else(|| bad(format!("truncated at byte {at}")))?;
    Ok(s.try_into().expect("N bytes"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    Ok(u16::from_le_bytes(bytes_at(b, at)?))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    Ok(u32::from_le_bytes(bytes_at(b, at)?))
}

fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    Ok(u64::from_le_bytes(bytes_at(b, at)?))
}

/// `n` bytes at `at` of `b`, or an error naming `what`.
fn slice<'a>(b: &'a [u8], at: u64, n: u64, what: &str) -> Result<&'a [u8]> {
    let end = at.checked_add(n).filter(|&e| e <= b.len() as u64);
    let end = end.ok_or_else(|| {
        bad(format!(
            "{what}: {n} bytes at {at} pass the file's end ({} bytes)",
            b.len()
        ))
    })?;
    Ok(&b[at as usize..end as usize])
}

/// Whether `b` starts like a zip archive.
pub fn is_zip(b: &[u8]) -> bool {
    b.len() >= 4 && u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == LOCAL
}

/// Every entry of the archive, in the central directory's order.
pub fn entries(b: &[u8]) -> Result<Vec<Entry<'_>>> {
    let (count, mut at) = directory(b)?;
    let mut out = Vec::new();
    for _ in 0..count {
        if u32_at(b, at)? != CENTRAL {
            return Err(bad(format!("no central directory entry at byte {at}")));
        }
        let method = u16_at(b, at + 10)?;
        let packed = u32_at(b, at + 20)? as u64;
        let size = u32_at(b, at + 24)? as u64;
        let name_len = u16_at(b, at + 28)? as usize;
        let extra_len = u16_at(b, at + 30)? as usize;
        let comment_len = u16_at(b, at + 32)? as usize;
        let local = u32_at(b, at + 42)? as u64;
        let name = slice(b, (at + 46) as u64, name_len as u64, "an entry's name")?;
        let name = String::from_utf8_lossy(name).into_owned();
        let extra = slice(
            b,
            (at + 46 + name_len) as u64,
            extra_len as u64,
            "an extra field",
        )?;
        let [size, packed, local] = zip64_fields(extra, [size, packed, local])?;
        if method != 0 || packed != size {
            return Err(bad(format!(
                "entry `{name}` is compressed (method {method}, {packed} of {size} bytes); \
                 PyTorch stores its entries uncompressed: re-save it with torch.save"
            )));
        }
        let data = local_data(b, local, size, &name)?;
        out.push(Entry { name, data });
        at += 46 + name_len + extra_len + comment_len;
    }
    Ok(out)
}

/// The central directory's entry count and offset, from the end of central directory record
/// (and its zip64 form where a field overflows).
fn directory(b: &[u8]) -> Result<(u64, usize)> {
    // The record is 22 bytes plus a comment of at most 65535.
    let first = b.len().saturating_sub(22 + 65535);
    let eocd = (first..b.len().saturating_sub(21))
        .rev()
        .find(|&i| u32_at(b, i).ok() == Some(EOCD))
        .ok_or_else(|| bad("no end of central directory record".into()))?;
    let mut count = u16_at(b, eocd + 10)? as u64;
    let mut offset = u32_at(b, eocd + 16)? as u64;
    if count == 0xffff || offset == 0xffff_ffff {
        let locator = eocd
            .checked_sub(20)
            .filter(|&l| u32_at(b, l).ok() == Some(EOCD64_LOCATOR))
            .ok_or_else(|| bad("a zip64 archive without its locator".into()))?;
        let at = u64_at(b, locator + 8)?;
        let at = usize::try_from(at).map_err(|_| bad(format!("zip64 record at {at}")))?;
        if u32_at(b, at)? != EOCD64 {
            return Err(bad(format!(
                "no zip64 end of central directory at byte {at}"
            )));
        }
        count = u64_at(b, at + 32)?;
        offset = u64_at(b, at + 48)?;
    }
    let offset = usize::try_from(offset)
        .ok()
        .filter(|&o| o < b.len())
        .ok_or_else(|| {
            bad(format!(
                "central directory offset {offset} past the file's end"
            ))
        })?;
    Ok((count, offset))
}

/// An entry's (size, compressed size, local header offset), from its zip64 extra field where
/// the 32-bit fields overflow: the extra field holds, in that order, each field whose 32-bit
/// value is 0xffffffff.
fn zip64_fields(extra: &[u8], mut fields: [u64; 3]) -> Result<[u64; 3]> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at)?;
        let len = u16_at(extra, at + 2)? as usize;
        if id == 1 {
            let mut f = at + 4;
            for v in &mut fields {
                if *v == 0xffff_ffff {
                    *v = u64_at(extra, f)?;
                    f += 8;
                }
            }
            break;
        }
        at += 4 + len;
    }
    Ok(fields)
}

/// The bytes of a stored entry from its local header.
fn local_data<'a>(b: &'a [u8], local: u64, size: u64, name: &str) -> Result<&'a [u8]> {
    let at = usize::try_from(local).map_err(|_| bad(format!("`{name}` at {local}")))?;
    if u32_at(b, at)? != LOCAL {
        return Err(bad(format!("`{name}`: no local header at byte {at}")));
    }
    let skip = 30 + u16_at(b, at + 26)? as u64 + u16_at(b, at + 28)? as u64;
    slice(b, local + skip, size, &format!("`{name}`"))
}
