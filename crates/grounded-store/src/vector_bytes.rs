//! Vectors as little-endian `f32` bytes: compact (4 bytes a dimension) and
//! the same on every platform, so a cache can move between machines.

/// Encodes a vector as little-endian `f32` bytes.
pub fn encode(vector: &[f32]) -> Vec<u8> {
    vector
        .iter()
        .flat_map(|value| value.to_le_bytes())
        .collect()
}

/// Decodes little-endian `f32` bytes; `None` when the length is not a multiple of 4.
pub fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let values = bytes
        .chunks_exact(4)
        .map(|quad| f32::from_le_bytes([quad[0], quad[1], quad[2], quad[3]]))
        .collect();
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_ragged_input() {
        let vector = vec![0.0, -1.5, f32::MIN_POSITIVE, 3.25e10];
        assert_eq!(decode(&encode(&vector)).unwrap(), vector);
        assert_eq!(encode(&[1.0]), vec![0, 0, 0x80, 0x3f]);
        assert!(decode(&[1, 2, 3]).is_none());
    }
}
