//! The part of Python's pickle format that `torch.save` writes (protocols 2 to 4), read into a
//! tree of [`Value`]s without running anything: a global stays a (module, name) pair, a call
//! (REDUCE, NEWOBJ) stays an [`Object`] holding its callable, its arguments and the state and
//! items later opcodes give it. `super` reads the tensors out of that tree. An opcode outside
//! this subset, or a malformed stream, is an error naming the opcode and its byte offset.

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::{DrConvError, Result};

/// A shared, mutable container: pickle's memo refers to an object that later opcodes fill.
pub type Shared<T> = Rc<RefCell<T>>;

/// One unpickled value.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    // Read only through `Debug` (an error's or a test's view of the tree).
    #[allow(dead_code)]
    Float(f64),
    Str(String),
    #[allow(dead_code)]
    Bytes(Vec<u8>),
    /// Shared like the containers, so that a clone (the memo's) never copies a deep tree.
    Tuple(Rc<Vec<Value>>),
    List(Shared<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    /// `module.name`, unresolved.
    Global(String, String),
    Object(Shared<Object>),
    /// A persistent id (`torch.save`'s storages).
    Persistent(Box<Value>),
}

/// The result of calling `callable(*args)`, with what BUILD, SETITEMS and APPENDS added.
#[derive(Debug, Clone)]
pub struct Object {
    pub callable: Value,
    pub args: Vec<Value>,
    pub state: Option<Value>,
    pub items: Vec<(Value, Value)>,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// The elements of a tuple or list.
    pub fn elements(&self) -> Option<Vec<Value>> {
        match self {
            Value::Tuple(v) => Some(v.to_vec()),
            Value::List(v) => Some(v.borrow().clone()),
            _ => None,
        }
    }

    /// Whether this is the global `module.name`.
    pub fn is_global(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Global(m, n) if m == module && n == name)
    }
}

/// Deepest nesting of containers and objects a walk of the tree follows (a crafted file cannot
/// exhaust the stack of whatever walks it).
pub const MAX_DEPTH: usize = 256;

/// Values drop without recursion: a crafted pickle nests a million tuples in a megabyte
/// (TUPLE1 is one byte), and a recursive drop of that would overflow the stack. Each value hands
/// its children (those it alone owns) to a loop instead.
impl Drop for Value {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_children(self, &mut pending);
        while let Some(mut v) = pending.pop() {
            take_children(&mut v, &mut pending);
        }
    }
}

/// Moves `v`'s children into `out`, where `v` is their only owner.
fn take_children(v: &mut Value, out: &mut Vec<Value>) {
    match v {
        Value::Tuple(xs) => {
            if let Some(xs) = Rc::get_mut(xs) {
                out.append(xs);
            }
        }
        Value::List(l) => {
            if let Some(cell) = Rc::get_mut(l) {
                out.append(cell.get_mut());
            }
        }
        Value::Dict(d) => {
            if let Some(cell) = Rc::get_mut(d) {
                for (k, x) in cell.get_mut().drain(..) {
                    out.extend([k, x]);
                }
            }
        }
        Value::Object(o) => {
            if let Some(cell) = Rc::get_mut(o) {
                let o = cell.get_mut();
                out.push(std::mem::replace(&mut o.callable, Value::None));
                out.append(&mut o.args);
                out.extend(o.state.take());
                for (k, x) in o.items.drain(..) {
                    out.extend([k, x]);
                }
            }
        }
        Value::Persistent(b) => out.push(std::mem::replace(&mut **b, Value::None)),
        _ => {}
    }
}

fn shared<T>(v: T) -> Shared<T> {
    Rc::new(RefCell::new(v))
}

/// The stack machine's state.
struct Machine<'a> {
    b: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    /// Where each MARK left the stack.
    marks: Vec<usize>,
    memo: std::collections::HashMap<u64, Value>,
}

fn bad(what: String) -> DrConvError {
    DrConvError::Weights(format!("not a valid PyTorch checkpoint (pickle): {what}"))
}

/// Runs the pickle program `b` up to STOP and returns its result.
pub fn load(b: &[u8]) -> Result<Value> {
    let mut m = Machine {
        b,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Default::default(),
    };
    loop {
        let op_at = m.at;
        let op = m.byte()?;
        if op == b'.' {
            return m.pop(op, op_at);
        }
        m.step(op, op_at)?;
        if m.marks.len() + m.stack.len() > 1 << 24 {
            return Err(bad(format!("stack over 2^24 values at byte {op_at}")));
        }
    }
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| bad(format!("truncated at byte {}", self.at)))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let s = self.take(n)?;
        Ok(s.iter().rev().fold(0u64, |a, &x| (a << 8) | x as u64))
    }

    /// Bytes of a length-prefixed field (`n`-byte little-endian length).
    fn sized(&mut self, n: usize) -> Result<Vec<u8>> {
        let len = self.uint(n)?;
        let len = usize::try_from(len).map_err(|_| bad(format!("length {len}")))?;
        Ok(self.take(len)?.to_vec())
    }

    /// A newline-terminated text argument (GLOBAL, the text opcodes).
    fn line(&mut self) -> Result<String> {
        let rest = &self.b[self.at..];
        let n = rest
            .iter()
            .position(|&c| c == b'\n')
            .ok_or_else(|| bad(format!("unterminated line at byte {}", self.at)))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.at += n + 1;
        Ok(s)
    }

    fn pop(&mut self, op: u8, at: usize) -> Result<Value> {
        if self.marks.last() == Some(&self.stack.len()) {
            return Err(bad(format!(
                "opcode {op:#04x} at byte {at} pops past a MARK"
            )));
        }
        (self.stack.pop()).ok_or_else(|| bad(format!("opcode {op:#04x} at byte {at}: empty stack")))
    }

    /// The values above the last MARK, which is removed.
    fn pop_mark(&mut self, op: u8, at: usize) -> Result<Vec<Value>> {
        let m = (self.marks.pop())
            .ok_or_else(|| bad(format!("opcode {op:#04x} at byte {at}: no MARK")))?;
        Ok(self.stack.split_off(m))
    }

    fn top(&mut self, op: u8, at: usize) -> Result<&mut Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        match self.stack.len() > floor {
            true => Ok(self.stack.last_mut().expect("non-empty")),
            false => Err(bad(format!("opcode {op:#04x} at byte {at}: empty stack"))),
        }
    }

    fn memo_get(&self, key: u64, at: usize) -> Result<Value> {
        (self.memo.get(&key).cloned()).ok_or_else(|| bad(format!("memo {key} unset at byte {at}")))
    }

    fn memo_put(&mut self, key: u64, op: u8, at: usize) -> Result<()> {
        let v = self.top(op, at)?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn step(&mut self, op: u8, at: usize) -> Result<()> {
        if self.control(op, at)? || self.mutate(op, at)? {
            return Ok(());
        }
        let v = match self.atom(op, at)? {
            Some(v) => v,
            None => self.compound(op, at)?,
        };
        self.stack.push(v);
        Ok(())
    }

    /// The opcodes that only move the machine: protocol, frames, marks, pops and the memo's
    /// stores. Whether `op` was one.
    fn control(&mut self, op: u8, at: usize) -> Result<bool> {
        match op {
            0x80 => {
                let proto = self.byte()?;
                if proto > 5 {
                    return Err(bad(format!("pickle protocol {proto}")));
                }
            }
            0x95 => {
                self.take(8)?; // FRAME: its length only
            }
            b'(' => self.marks.push(self.stack.len()),
            b'0' => drop(self.pop(op, at)?),
            b'1' => drop(self.pop_mark(op, at)?),
            b'q' | b'r' => {
                let key = self.uint(if op == b'q' { 1 } else { 4 })?;
                self.memo_put(key, op, at)?;
            }
            0x94 => self.memo_put(self.memo.len() as u64, op, at)?,
            b'p' => {
                let key = self.line()?.trim().parse();
                let key = key.map_err(|_| bad(format!("PUT at {at}")))?;
                self.memo_put(key, op, at)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that change the value on top of the stack: appends, set items, BUILD.
    fn mutate(&mut self, op: u8, at: usize) -> Result<bool> {
        match op {
            b'a' => {
                let x = self.pop(op, at)?;
                self.extend(vec![x], op, at)?;
            }
            b'e' | 0x90 => {
                let xs = self.pop_mark(op, at)?;
                self.extend(xs, op, at)?;
            }
            b's' => {
                let v = self.pop(op, at)?;
                let k = self.pop(op, at)?;
                self.set_items(vec![(k, v)], op, at)?;
            }
            b'u' => {
                let kv = pairs(self.pop_mark(op, at)?, at)?;
                self.set_items(kv, op, at)?;
            }
            b'b' => {
                let state = self.pop(op, at)?;
                match self.top(op, at)? {
                    Value::Object(o) => o.borrow_mut().state = Some(state),
                    // A dict subclass's attributes (a state_dict's `_metadata`): not items.
                    Value::Dict(_) => {}
                    v => return Err(bad(format!("BUILD at {at} on a {}", kind(v)))),
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The opcodes that push a value read from the stream or the memo.
    fn atom(&mut self, op: u8, at: usize) -> Result<Option<Value>> {
        let text = |s: Vec<u8>| Value::Str(String::from_utf8_lossy(&s).into_owned());
        Ok(Some(match op {
            b'2' => self.top(op, at)?.clone(),
            b'h' | b'j' => {
                let key = self.uint(if op == b'h' { 1 } else { 4 })?;
                self.memo_get(key, at)?
            }
            b'g' => {
                let key = self.line()?.trim().parse();
                self.memo_get(key.map_err(|_| bad(format!("GET at {at}")))?, at)?
            }
            b'N' => Value::None,
            0x88 => Value::Bool(true),
            0x89 => Value::Bool(false),
            b'K' => Value::Int(self.uint(1)? as i64),
            b'M' => Value::Int(self.uint(2)? as i64),
            b'J' => Value::Int(self.uint(4)? as u32 as i32 as i64),
            0x8a => self.long(1)?,
            0x8b => self.long(4)?,
            b'I' | b'L' => self.text_int(at)?,
            b'G' => Value::Float(f64::from_bits(self.uint(8)?.swap_bytes())),
            b'F' => {
                let s = self.line()?.trim().parse();
                Value::Float(s.map_err(|_| bad(format!("FLOAT at {at}")))?)
            }
            b'X' => text(self.sized(4)?),
            0x8c => text(self.sized(1)?),
            0x8d => text(self.sized(8)?),
            b'V' => Value::Str(self.line()?),
            b'S' => {
                let s = self.line()?;
                Value::Str(s.trim().trim_matches(|c| c == '\'' || c == '"').into())
            }
            b'T' | b'B' => Value::Bytes(self.sized(4)?),
            b'U' | b'C' => Value::Bytes(self.sized(1)?),
            0x8e | 0x96 => Value::Bytes(self.sized(8)?),
            _ => return Ok(None),
        }))
    }

    /// The opcodes that build a value from others: tuples, lists, dicts, globals, calls,
    /// persistent ids; any other opcode is an error.
    fn compound(&mut self, op: u8, at: usize) -> Result<Value> {
        Ok(match op {
            b')' => Value::Tuple(Rc::new(Vec::new())),
            b't' => Value::Tuple(Rc::new(self.pop_mark(op, at)?)),
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.pop(op, at)?);
                }
                v.reverse();
                Value::Tuple(Rc::new(v))
            }
            b']' | 0x8f => Value::List(shared(Vec::new())),
            b'l' | 0x91 => Value::List(shared(self.pop_mark(op, at)?)),
            b'}' => Value::Dict(shared(Vec::new())),
            b'd' => Value::Dict(shared(pairs(self.pop_mark(op, at)?, at)?)),
            b'c' => {
                let module = self.line()?;
                Value::Global(module, self.line()?)
            }
            0x93 => {
                let name = self.pop(op, at)?;
                let module = self.pop(op, at)?;
                match (&module, &name) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(m.clone(), n.clone()),
                    _ => return Err(bad(format!("STACK_GLOBAL at {at}: not two strings"))),
                }
            }
            b'R' | 0x81 | 0x92 => {
                if op == 0x92 {
                    self.pop(op, at)?; // NEWOBJ_EX's keyword arguments
                }
                let args = self.pop(op, at)?;
                let callable = self.pop(op, at)?;
                let args = args.elements();
                call(
                    callable,
                    args.ok_or_else(|| bad(format!("call at {at}: args")))?,
                )
            }
            b'Q' => Value::Persistent(Box::new(self.pop(op, at)?)),
            b'P' => Value::Persistent(Box::new(Value::Str(self.line()?))),
            other => {
                return Err(bad(format!(
                    "opcode {other:#04x} at byte {at} is outside what torch.save writes"
                )))
            }
        })
    }

    fn long(&mut self, n: usize) -> Result<Value> {
        let len = self.uint(n)? as usize;
        if len > 8 {
            // Integers past 64 bits (the legacy format's magic number): kept as their bytes.
            return Ok(Value::Bytes(self.take(len)?.to_vec()));
        }
        let s = self.take(len)?;
        let mut v: i64 = 0;
        for (i, &x) in s.iter().enumerate() {
            v |= (x as i64) << (8 * i);
        }
        if len > 0 && len < 8 && s[len - 1] & 0x80 != 0 {
            v -= 1i64 << (8 * len);
        }
        Ok(Value::Int(v))
    }

    fn text_int(&mut self, at: usize) -> Result<Value> {
        let s = self.line()?;
        let t = s.trim().trim_end_matches('L');
        match t {
            "01" => Ok(Value::Bool(true)),
            "00" => Ok(Value::Bool(false)),
            _ => Ok(Value::Int(
                t.parse().map_err(|_| bad(format!("INT at {at}: {s}")))?,
            )),
        }
    }

    fn extend(&mut self, xs: Vec<Value>, op: u8, at: usize) -> Result<()> {
        match self.top(op, at)? {
            Value::List(l) => l.borrow_mut().extend(xs),
            Value::Object(o) => {
                let mut o = o.borrow_mut();
                let n = o.items.len() as i64;
                let indexed = xs.into_iter().enumerate();
                o.items
                    .extend(indexed.map(|(i, x)| (Value::Int(n + i as i64), x)));
            }
            v => return Err(bad(format!("APPENDS at {at} on a {}", kind(v)))),
        }
        Ok(())
    }

    fn set_items(&mut self, kv: Vec<(Value, Value)>, op: u8, at: usize) -> Result<()> {
        match self.top(op, at)? {
            Value::Dict(d) => d.borrow_mut().extend(kv),
            Value::Object(o) => o.borrow_mut().items.extend(kv),
            v => return Err(bad(format!("SETITEMS at {at} on a {}", kind(v)))),
        }
        Ok(())
    }
}

/// `callable(*args)`: an ordered dict is a dict; anything else an [`Object`].
fn call(callable: Value, args: Vec<Value>) -> Value {
    if callable.is_global("collections", "OrderedDict") && args.is_empty() {
        return Value::Dict(shared(Vec::new()));
    }
    Value::Object(shared(Object {
        callable,
        args,
        state: None,
        items: Vec::new(),
    }))
}

fn pairs(flat: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if !flat.len().is_multiple_of(2) {
        return Err(bad(format!(
            "dict at byte {at}: an odd number of keys and values"
        )));
    }
    let mut out = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Float(_) => "float",
        Value::Str(_) => "str",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "tuple",
        Value::List(_) => "list",
        Value::Dict(_) => "dict",
        Value::Global(..) => "global",
        Value::Object(_) => "object",
        Value::Persistent(_) => "persistent id",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_2_ordered_dict_of_calls() {
        // pickle.dumps(OrderedDict(a=(1, -2, 300), b=[True, None, 'x']), protocol=2) in shape:
        // GLOBAL, EMPTY_TUPLE, REDUCE, MARK, keys and values, SETITEMS, STOP.
        let mut p = vec![0x80, 2];
        p.extend(b"ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aK\x01J\xfe\xff\xff\xffM\x2c\x01\x87q\x02");
        p.extend(b"X\x01\x00\x00\x00b]q\x03(\x88NX\x01\x00\x00\x00xeu.");
        let v = load(&p).unwrap();
        let Value::Dict(ref d) = v else {
            panic!("{v:?}")
        };
        let d = d.borrow();
        assert_eq!(d[0].0.as_str(), Some("a"));
        let a: Vec<_> = d[0]
            .1
            .elements()
            .unwrap()
            .iter()
            .map(|x| x.as_int())
            .collect();
        assert_eq!(a, [Some(1), Some(-2), Some(300)]);
        let b = d[1].1.elements().unwrap();
        assert!(matches!(b[..], [Value::Bool(true), Value::None, Value::Str(ref s)] if s == "x"));
    }

    #[test]
    fn a_million_nested_tuples_drop_without_recursion() {
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(0x85u8, 1 << 20));
        p.push(b'.');
        let v = load(&p).unwrap();
        assert!(matches!(v, Value::Tuple(_)));
        drop(v);
        // The same chain left in the memo and on the stack at an error.
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(0x85u8, 1 << 20));
        p.extend([b'q', 0, b'2', 0xff]);
        assert!(load(&p).is_err());
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        for p in [
            &b""[..],
            b"\x80\x02",
            b"(t",
            b"t.",
            b"q\x00.",
            b"h\x05.",
            b"\xff.",
            b"X\xff\xff\xff\x7f",
        ] {
            assert!(load(p).is_err(), "{p:?}");
        }
    }
}
