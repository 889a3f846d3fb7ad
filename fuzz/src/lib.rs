//! What every fuzz target checks of a decoder: it never panics, and a value it decoded
//! re-encodes to the bytes it was decoded from.
//!
//! XDR is canonical except for padding: the decoder ignores the content of the 1 to 3 bytes
//! that pad an opaque or a string to a multiple of four (RFC 4506 says they are zero; refusing
//! a peer over them helps nobody), and the encoder writes zeros. So the re-encoding must have
//! the length that was consumed and equal the input everywhere except at bytes that are zero in
//! the re-encoding and not the first of a 4-byte word, and the re-encoding must decode to the
//! same value (which shows the bytes that differ are ignored).
//!
//! Input layout of the targets that decode a chosen type: the first byte selects the type, the
//! rest is its XDR. `nfs3_args` and `nfs3_res`: the byte is the NFSv3 procedure number.
//! `mount3` and `portmap`: it is `procedure * 2` for the arguments and `procedure * 2 + 1` for
//! the result. The seed generator (`crates/proto/tests/fuzz_seeds.rs`) writes the same layout.

use mountshare_proto::xdr::{decode_prefix, to_bytes, XdrDecode, XdrEncode};
use std::fmt::Debug;

/// Decode a `T` from the start of `input`; if it decodes, check that it re-encodes to the
/// bytes it took.
pub fn round_trip<T: XdrDecode + XdrEncode + PartialEq + Debug>(input: &[u8]) {
    let Ok((value, used)) = decode_prefix::<T>(input) else {
        return;
    };
    assert!(
        used <= input.len(),
        "consumed {used} of {} bytes",
        input.len()
    );
    let again = to_bytes(&value);
    same_modulo_padding(&input[..used], &again, &value);
    if again[..] != input[..used] {
        let (back, back_used) =
            decode_prefix::<T>(&again).expect("the canonical re-encoding decodes");
        assert_eq!(back_used, again.len(), "canonical re-encoding of {value:?}");
        assert_eq!(
            &back, &value,
            "canonical re-encoding decodes to another value"
        );
    }
}

/// `again` (an encoder's output) equals `wire` (what was decoded) except at padding bytes.
pub fn same_modulo_padding(wire: &[u8], again: &[u8], value: &dyn Debug) {
    assert_eq!(
        again.len(),
        wire.len(),
        "{value:?} re-encodes to {} bytes, decoded from {}",
        again.len(),
        wire.len()
    );
    for (i, (w, a)) in wire.iter().zip(again).enumerate() {
        assert!(
            w == a || (*a == 0 && i % 4 != 0),
            "{value:?}: byte {i} was {w:#04x} on the wire and re-encodes as {a:#04x}, which \
             is not padding"
        );
    }
}

/// Split a selector byte off the input.
pub fn select(data: &[u8]) -> Option<(u8, &[u8])> {
    let (&sel, rest) = data.split_first()?;
    Some((sel, rest))
}
