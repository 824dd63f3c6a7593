//! Text that gzip cannot shrink much, from a seeded xorshift stream: for
//! events that must stay large after compression (one that cannot fit a
//! message; a few requests that fill a disk). A run of one byte would
//! compress to nothing.

fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `len` lowercase letters; the same `seed` gives the same text.
pub fn incompressible_letters(seed: u64, len: usize) -> String {
    let mut next = xorshift(seed);
    (0..len)
        .map(|_| char::from(b'a' + (next() % 26) as u8))
        .collect()
}

/// `blocks` runs of 16 hexadecimal digits; the same `seed` gives the same
/// text.
pub fn incompressible_hex(seed: u64, blocks: usize) -> String {
    let mut next = xorshift(seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (0..blocks).map(|_| format!("{:016x}", next())).collect()
}
