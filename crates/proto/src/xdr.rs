//! XDR (RFC 4506): the encoding traits and a bounds-checked reader that never trusts a length.
//!
//! Every variable length read from the wire is checked against a caller-supplied cap and against
//! the bytes actually remaining before anything is allocated, so a 4 GiB length in a 10-byte
//! buffer fails at once. Decoding never panics.

use bytes::{BufMut, BytesMut};

/// Why a value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdrError {
    /// The input ended before the value did (or a length claims more bytes than remain).
    #[error("XDR input truncated")]
    Truncated,
    /// A length on the wire is larger than the protocol allows for this item.
    #[error("XDR {what} length {len} exceeds maximum {max}")]
    TooLong {
        what: &'static str,
        len: u32,
        max: u32,
    },
    /// A union discriminant or enum value the protocol does not define.
    #[error("invalid XDR discriminant {value} for {what}")]
    InvalidDiscriminant { what: &'static str, value: u32 },
    /// A boolean that is neither 0 nor 1 (RFC 4506 section 4.4).
    #[error("invalid XDR bool {0}")]
    InvalidBool(u32),
}

/// A value that can be written as XDR.
pub trait XdrEncode {
    fn encode(&self, out: &mut BytesMut);
}

/// A value that can be read from XDR.
pub trait XdrDecode: Sized {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError>;
}

/// Number of zero bytes that pad `len` bytes of opaque data to a multiple of four
/// (RFC 4506 section 4.9).
pub const fn pad_len(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// Encoded size of a variable-length opaque or string of `len` bytes: length word, data, padding.
pub const fn opaque_var_len(len: usize) -> usize {
    4 + len + pad_len(len)
}

/// A cursor over untrusted XDR bytes.
#[derive(Debug, Clone)]
pub struct XdrReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unconsumed tail of the input.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let end = self.pos.checked_add(n).ok_or(XdrError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(XdrError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], XdrError> {
        let s = self.take(N)?;
        s.try_into().map_err(|_| XdrError::Truncated)
    }

    pub fn get_u32(&mut self) -> Result<u32, XdrError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    pub fn get_i32(&mut self) -> Result<i32, XdrError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    pub fn get_u64(&mut self) -> Result<u64, XdrError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    pub fn get_i64(&mut self) -> Result<i64, XdrError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    pub fn get_bool(&mut self) -> Result<bool, XdrError> {
        match self.get_u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::InvalidBool(v)),
        }
    }

    /// Fixed-length opaque of `n` bytes plus its padding. Padding content is not checked:
    /// RFC 4506 says it is zero, but rejecting a peer over it helps nobody.
    pub fn get_opaque_fixed(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let total = n.checked_add(pad_len(n)).ok_or(XdrError::Truncated)?;
        let s = self.take(total)?;
        s.get(..n).ok_or(XdrError::Truncated)
    }

    /// Variable-length opaque (`opaque x<max>`), borrowed from the input. The length is checked
    /// against `max` and the remaining input before anything is read.
    pub fn get_opaque_var(&mut self, what: &'static str, max: u32) -> Result<&'a [u8], XdrError> {
        let len = self.get_u32()?;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        let len = usize::try_from(len).map_err(|_| XdrError::Truncated)?;
        if len > self.remaining() {
            return Err(XdrError::Truncated);
        }
        self.get_opaque_fixed(len)
    }

    /// XDR `string x<max>`: on the wire the same as a variable opaque. NFS names are bytes, not
    /// necessarily UTF-8, so no conversion is done.
    pub fn get_string(&mut self, what: &'static str, max: u32) -> Result<&'a [u8], XdrError> {
        self.get_opaque_var(what, max)
    }

    /// Counted array (`T x<max>`). Every XDR item takes at least four bytes, so a count larger
    /// than a quarter of the remaining input is rejected before allocating.
    pub fn get_list<T>(
        &mut self,
        what: &'static str,
        max: u32,
        mut f: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Vec<T>, XdrError> {
        let len = self.get_u32()?;
        if len > max {
            return Err(XdrError::TooLong { what, len, max });
        }
        let len = usize::try_from(len).map_err(|_| XdrError::Truncated)?;
        if len > self.remaining() / 4 {
            return Err(XdrError::Truncated);
        }
        let mut v = Vec::with_capacity(len);
        for _ in 0..len {
            v.push(f(self)?);
        }
        Ok(v)
    }

    /// Linked list in XDR optional-data form (`struct node { T item; node *next; }`): a TRUE
    /// before every element and a FALSE at the end. At most `max` elements are accepted.
    pub fn get_linked_list<T>(
        &mut self,
        what: &'static str,
        max: u32,
        mut f: impl FnMut(&mut Self) -> Result<T, XdrError>,
    ) -> Result<Vec<T>, XdrError> {
        let mut v = Vec::new();
        while self.get_bool()? {
            if v.len() >= max as usize {
                return Err(XdrError::TooLong {
                    what,
                    len: max.saturating_add(1),
                    max,
                });
            }
            v.push(f(self)?);
        }
        Ok(v)
    }
}

/// Write a u32 in network order.
pub fn put_u32(out: &mut BytesMut, v: u32) {
    out.put_u32(v);
}

/// Write fixed-length opaque data and its padding.
pub fn put_opaque_fixed(out: &mut BytesMut, data: &[u8]) {
    out.put_slice(data);
    out.put_bytes(0, pad_len(data.len()));
}

/// Write variable-length opaque data: length, data, padding. The caller keeps `data` within the
/// protocol's cap; lengths beyond u32 are a programming error.
pub fn put_opaque_var(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(u32::try_from(data.len()).is_ok());
    out.put_u32(data.len() as u32);
    put_opaque_fixed(out, data);
}

/// Write an XDR string (same wire form as a variable opaque).
pub fn put_string(out: &mut BytesMut, s: &[u8]) {
    put_opaque_var(out, s);
}

/// Write a counted array.
pub fn put_list<T>(out: &mut BytesMut, items: &[T], mut f: impl FnMut(&mut BytesMut, &T)) {
    debug_assert!(u32::try_from(items.len()).is_ok());
    out.put_u32(items.len() as u32);
    for item in items {
        f(out, item);
    }
}

/// Write a linked list in optional-data form: TRUE before every element, FALSE at the end.
pub fn put_linked_list<T>(out: &mut BytesMut, items: &[T], mut f: impl FnMut(&mut BytesMut, &T)) {
    for item in items {
        out.put_u32(1);
        f(out, item);
    }
    out.put_u32(0);
}

/// Encode a value into a fresh buffer.
pub fn to_bytes<T: XdrEncode + ?Sized>(v: &T) -> BytesMut {
    let mut out = BytesMut::new();
    v.encode(&mut out);
    out
}

/// Decode a value from the start of `buf`. Trailing bytes are ignored (see [`decode_exact`]).
pub fn decode<T: XdrDecode>(buf: &[u8]) -> Result<T, XdrError> {
    T::decode(&mut XdrReader::new(buf))
}

/// Decode a value and return it with the number of bytes it took.
pub fn decode_prefix<T: XdrDecode>(buf: &[u8]) -> Result<(T, usize), XdrError> {
    let mut r = XdrReader::new(buf);
    let v = T::decode(&mut r)?;
    Ok((v, r.position()))
}

impl XdrEncode for () {
    fn encode(&self, _out: &mut BytesMut) {}
}

impl XdrDecode for () {
    fn decode(_r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        Ok(())
    }
}

/// XDR's integers (RFC 4506 sections 4.1 to 4.5): four or eight bytes, big-endian.
macro_rules! xdr_integer {
    ($($t:ty: $put:ident, $get:ident;)*) => {$(
        impl XdrEncode for $t {
            fn encode(&self, out: &mut BytesMut) {
                out.$put(*self);
            }
        }

        impl XdrDecode for $t {
            fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
                r.$get()
            }
        }
    )*};
}

xdr_integer! {
    u32: put_u32, get_u32;
    i32: put_i32, get_i32;
    u64: put_u64, get_u64;
    i64: put_i64, get_i64;
}

impl XdrEncode for bool {
    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(u32::from(*self));
    }
}

impl XdrDecode for bool {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_bool()
    }
}

/// XDR optional-data (`T *x`): a bool, then the value if TRUE (RFC 4506 section 4.19).
impl<T: XdrEncode> XdrEncode for Option<T> {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Some(v) => {
                out.put_u32(1);
                v.encode(out);
            }
            None => out.put_u32(0),
        }
    }
}

impl<T: XdrDecode> XdrDecode for Option<T> {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        if r.get_bool()? {
            Ok(Some(T::decode(r)?))
        } else {
            Ok(None)
        }
    }
}

/// Fixed-length opaque (`opaque x[N]`), e.g. the 8-byte verifiers of NFSv3.
impl<const N: usize> XdrEncode for [u8; N] {
    fn encode(&self, out: &mut BytesMut) {
        put_opaque_fixed(out, self);
    }
}

impl<const N: usize> XdrDecode for [u8; N] {
    fn decode(r: &mut XdrReader<'_>) -> Result<Self, XdrError> {
        r.get_opaque_fixed(N)?
            .try_into()
            .map_err(|_| XdrError::Truncated)
    }
}

/// Implements [`XdrEncode`] and [`XdrDecode`] for a struct whose fields are encoded in
/// declaration order. A field written `name: opaque("what", MAX)` is a variable-length opaque or
/// string held in a `Vec<u8>` and capped at `MAX` when decoding; `name: linked_list("what",
/// MAX)` is a `Vec` sent as a linked list (`T *next`: TRUE before every element, FALSE at the
/// end) of at most `MAX` elements when decoding; other fields use their own trait
/// implementations. `xdr_struct!(Name(newtype))` forwards to the single field of a tuple
/// struct, and `xdr_struct!(Name(linked_list("what", MAX)))` makes that field such a list.
#[macro_export]
#[doc(hidden)]
macro_rules! xdr_struct {
    ($name:ident(newtype)) => {
        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                $crate::xdr::XdrEncode::encode(&self.0, out)
            }
        }
        impl $crate::xdr::XdrDecode for $name {
            fn decode(
                r: &mut $crate::xdr::XdrReader<'_>,
            ) -> ::core::result::Result<Self, $crate::xdr::XdrError> {
                Ok(Self($crate::xdr::XdrDecode::decode(r)?))
            }
        }
    };
    ($name:ident($kind:ident($what:literal, $max:expr))) => {
        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                $crate::xdr_struct!(@enc self.0, out, $kind);
            }
        }
        impl $crate::xdr::XdrDecode for $name {
            fn decode(
                r: &mut $crate::xdr::XdrReader<'_>,
            ) -> ::core::result::Result<Self, $crate::xdr::XdrError> {
                Ok(Self($crate::xdr_struct!(@dec r, $kind, $what, $max)))
            }
        }
    };
    ($name:ident { $($field:ident $(: $kind:ident($what:literal, $max:expr))?),* $(,)? }) => {
        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                $( $crate::xdr_struct!(@enc self.$field, out $(, $kind)?); )*
            }
        }
        impl $crate::xdr::XdrDecode for $name {
            fn decode(
                r: &mut $crate::xdr::XdrReader<'_>,
            ) -> ::core::result::Result<Self, $crate::xdr::XdrError> {
                Ok(Self {
                    $( $field: $crate::xdr_struct!(@dec r $(, $kind, $what, $max)?), )*
                })
            }
        }
    };
    (@enc $v:expr, $out:ident) => { $crate::xdr::XdrEncode::encode(&$v, $out) };
    (@enc $v:expr, $out:ident, opaque) => { $crate::xdr::put_opaque_var($out, &$v) };
    (@enc $v:expr, $out:ident, linked_list) => {
        $crate::xdr::put_linked_list($out, &$v, |o, e| $crate::xdr::XdrEncode::encode(e, o))
    };
    (@dec $r:ident) => { $crate::xdr::XdrDecode::decode($r)? };
    (@dec $r:ident, opaque, $what:literal, $max:expr) => { $r.get_opaque_var($what, $max)?.to_vec() };
    (@dec $r:ident, linked_list, $what:literal, $max:expr) => {
        $r.get_linked_list($what, $max, $crate::xdr::XdrDecode::decode)?
    };
}

/// Defines a C-like XDR enum: unknown values decode as [`XdrError::InvalidDiscriminant`].
#[macro_export]
#[doc(hidden)]
macro_rules! xdr_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident ($what:literal) { $($(#[$vmeta:meta])* $var:ident = $val:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name { $($(#[$vmeta])* $var),* }

        impl $name {
            /// Every value the protocol defines.
            pub const ALL: &'static [$name] = &[$($name::$var),*];

            /// The wire value.
            pub const fn as_u32(self) -> u32 {
                match self { $($name::$var => $val),* }
            }

            /// The variant for a wire value, if the protocol defines one.
            pub const fn from_u32(v: u32) -> Option<Self> {
                match v { $($val => Some($name::$var),)* _ => None }
            }

            /// Its position in [`Self::ALL`] (declaration order, not the wire value).
            pub const fn index(self) -> usize {
                self as usize
            }
        }

        impl $crate::xdr::XdrEncode for $name {
            fn encode(&self, out: &mut ::bytes::BytesMut) {
                $crate::xdr::put_u32(out, self.as_u32());
            }
        }

        impl $crate::xdr::XdrDecode for $name {
            fn decode(
                r: &mut $crate::xdr::XdrReader<'_>,
            ) -> ::core::result::Result<Self, $crate::xdr::XdrError> {
                let value = r.get_u32()?;
                Self::from_u32(value)
                    .ok_or($crate::xdr::XdrError::InvalidDiscriminant { what: $what, value })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_opaque_length_in_short_buffer_fails_without_allocating() {
        let buf = [0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6];
        let mut r = XdrReader::new(&buf);
        assert_eq!(r.get_opaque_var("x", u32::MAX), Err(XdrError::Truncated));
        let mut r = XdrReader::new(&buf);
        assert_eq!(
            r.get_opaque_var("x", 64),
            Err(XdrError::TooLong {
                what: "x",
                len: u32::MAX,
                max: 64
            })
        );
    }

    #[test]
    fn huge_list_count_fails_before_allocating() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1];
        let mut r = XdrReader::new(&buf);
        let res = r.get_list("x", u32::MAX, |r| r.get_u32());
        assert_eq!(res, Err(XdrError::Truncated));
        let mut r = XdrReader::new(&buf);
        let res = r.get_list("x", 10, |r| r.get_u32());
        assert!(matches!(res, Err(XdrError::TooLong { .. })));
    }

    #[test]
    fn linked_list_is_capped() {
        let mut out = BytesMut::new();
        put_linked_list(&mut out, &[1u32, 2, 3], |o, v| v.encode(o));
        let mut r = XdrReader::new(&out);
        assert_eq!(
            r.get_linked_list("x", 3, |r| r.get_u32()),
            Ok(vec![1, 2, 3])
        );
        let mut r = XdrReader::new(&out);
        assert!(matches!(
            r.get_linked_list("x", 2, |r| r.get_u32()),
            Err(XdrError::TooLong { .. })
        ));
    }

    #[test]
    fn opaque_is_padded_to_four_bytes() {
        let mut out = BytesMut::new();
        put_opaque_var(&mut out, b"abcde");
        assert_eq!(&out[..], b"\0\0\0\x05abcde\0\0\0");
        assert_eq!(out.len(), opaque_var_len(5));
        let mut r = XdrReader::new(&out);
        assert_eq!(r.get_opaque_var("x", 5), Ok(&b"abcde"[..]));
        assert_eq!(r.remaining(), 0);
        // Missing padding is truncation.
        let mut r = XdrReader::new(&out[..10]);
        assert_eq!(r.get_opaque_var("x", 5), Err(XdrError::Truncated));
    }

    #[test]
    fn bools_other_than_zero_and_one_are_rejected() {
        assert_eq!(decode::<bool>(&[0, 0, 0, 2]), Err(XdrError::InvalidBool(2)));
        assert_eq!(
            decode::<Option<u32>>(&[0, 0, 0, 1]),
            Err(XdrError::Truncated)
        );
    }
}
