//! The protobuf wire format: a bounds-checked reader and a writer for varints, fixed
//! 32/64-bit values and length-delimited fields.

use super::ProtobufError;

/// How a field's value is laid out on the wire (the low three bits of its key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// A base-128 varint (bool, int32, int64, enums).
    Varint,
    /// Eight little-endian bytes (double).
    Fixed64,
    /// A length-prefixed run of bytes (string, bytes, messages, packed scalars).
    Len,
    /// Four little-endian bytes (float; unused by Kubernetes).
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Result<WireType, ProtobufError> {
        match bits {
            0 => Ok(WireType::Varint),
            1 => Ok(WireType::Fixed64),
            2 => Ok(WireType::Len),
            5 => Ok(WireType::Fixed32),
            other => Err(ProtobufError::UnsupportedWireType(other as u8)),
        }
    }

    fn bits(self) -> u64 {
        match self {
            WireType::Varint => 0,
            WireType::Fixed64 => 1,
            WireType::Len => 2,
            WireType::Fixed32 => 5,
        }
    }
}

/// One field value as read from the wire, before the schema gives it a meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum RawValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

impl RawValue<'_> {
    pub(super) fn wire_type(&self) -> WireType {
        match self {
            RawValue::Varint(_) => WireType::Varint,
            RawValue::Fixed64(_) => WireType::Fixed64,
            RawValue::Fixed32(_) => WireType::Fixed32,
            RawValue::Len(_) => WireType::Len,
        }
    }
}

/// Reads fields from a byte slice; every read is checked against the slice's end, so
/// truncated input gives [`ProtobufError::Truncated`] and never reads past it.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.buf.get(self.pos).ok_or(ProtobufError::Truncated)?;
            self.pos += 1;
            let bits = u64::from(byte & 0x7f);
            if i == 9 && bits > 1 {
                return Err(ProtobufError::VarintOverflow);
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or(ProtobufError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(ProtobufError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub(super) fn fixed64(&mut self) -> Result<u64, ProtobufError> {
        let bytes = self.take(8)?;
        let mut arr = [0u8; 8];
        arr.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(arr))
    }

    fn fixed32(&mut self) -> Result<u32, ProtobufError> {
        let bytes = self.take(4)?;
        let mut arr = [0u8; 4];
        arr.copy_from_slice(bytes);
        Ok(u32::from_le_bytes(arr))
    }

    /// The next field: its number and raw value, or `None` at the end of the slice.
    pub(super) fn field(&mut self) -> Result<Option<(u32, RawValue<'a>)>, ProtobufError> {
        if self.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(ProtobufError::InvalidFieldNumber(number));
        }
        let value = match WireType::from_bits(key & 7)? {
            WireType::Varint => RawValue::Varint(self.varint()?),
            WireType::Fixed64 => RawValue::Fixed64(self.fixed64()?),
            WireType::Fixed32 => RawValue::Fixed32(self.fixed32()?),
            WireType::Len => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Truncated)?;
                RawValue::Len(self.take(len)?)
            }
        };
        // Checked above: number < 2^29.
        Ok(Some((number as u32, value)))
    }
}

/// Appends protobuf fields to a buffer.
#[derive(Debug, Default)]
pub(super) struct Writer {
    pub(super) buf: Vec<u8>,
}

impl Writer {
    pub(super) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    pub(super) fn key(&mut self, number: u32, wire_type: WireType) {
        self.varint((u64::from(number) << 3) | wire_type.bits());
    }

    pub(super) fn varint_field(&mut self, number: u32, value: u64) {
        self.key(number, WireType::Varint);
        self.varint(value);
    }

    pub(super) fn fixed64_field(&mut self, number: u32, value: u64) {
        self.key(number, WireType::Fixed64);
        self.buf.extend_from_slice(&value.to_le_bytes());
    }

    pub(super) fn bytes_field(&mut self, number: u32, value: &[u8]) {
        self.key(number, WireType::Len);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value);
    }
}
