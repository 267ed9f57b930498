//! Tensors in the file format of `torch.save`, so plain `torch.load(path)` reads them in
//! current PyTorch, where `weights_only=True` is the default.
//!
//! The format is a zip archive (entries stored, not compressed) holding `data.pkl`, a pickle
//! (protocol 2) that rebuilds the tensor with `torch._utils._rebuild_tensor_v2` from a storage
//! named by persistent id, and `data/0`, that storage's raw little-endian bytes, aligned to 64
//! bytes in the file. Only globals on `torch.load`'s weights-only allow-list are named.

use std::io::{self, Write};

/// Writes a row-major `[rows, cols]` float32 tensor.
pub fn write_f32_matrix(
    mut w: impl Write,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> io::Result<()> {
    if data.len() != rows * cols {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "data is not rows x cols"));
    }
    let mut raw = Vec::with_capacity(data.len() * 4);
    data.iter().for_each(|f| raw.extend_from_slice(&f.to_le_bytes()));
    let pickle = pickle_tensor(data.len(), &[rows, cols], &[cols, 1]);
    let mut zip = ZipWriter::default();
    zip.add("archive/data.pkl", &pickle);
    zip.add("archive/.format_version", b"1");
    zip.add("archive/.storage_alignment", b"64");
    zip.add("archive/byteorder", b"little");
    zip.add("archive/data/0", &raw);
    zip.add("archive/version", b"3\n");
    zip.finish(&mut w)
}

/// The pickle of a float32 tensor over storage `0` with `numel` elements.
fn pickle_tensor(numel: usize, size: &[usize], stride: &[usize]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    p.global("torch._utils", "_rebuild_tensor_v2");
    p.op(b'('); // MARK: the arguments
    p.op(b'('); // MARK: the persistent id
    p.string("storage");
    p.global("torch", "FloatStorage");
    p.string("0");
    p.string("cpu");
    p.int(numel);
    p.op(b't'); // TUPLE
    p.op(b'Q'); // BINPERSID
    p.int(0); // storage offset
    p.tuple(size);
    p.tuple(stride);
    p.op(0x89); // NEWFALSE: requires_grad
    p.global("collections", "OrderedDict"); // backward hooks: OrderedDict()
    p.op(b')'); // EMPTY_TUPLE
    p.op(b'R'); // REDUCE
    p.op(b't'); // TUPLE
    p.op(b'R'); // REDUCE
    p.op(b'.'); // STOP
    p.0
}

struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, op: u8) {
        self.0.push(op);
    }

    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }

    fn string(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn int(&mut self, v: usize) {
        if let Ok(small) = i32::try_from(v) {
            self.0.push(b'J'); // BININT
            self.0.extend_from_slice(&small.to_le_bytes());
        } else {
            self.0.extend_from_slice(&[0x8a, 9]); // LONG1, 9 bytes (keeps the sign bit clear)
            self.0.extend_from_slice(&(v as u64).to_le_bytes());
            self.0.push(0);
        }
    }

    fn tuple(&mut self, items: &[usize]) {
        self.op(b'(');
        items.iter().for_each(|&i| self.int(i));
        self.op(b't');
    }
}

/// A minimal zip writer: stored entries, each entry's data aligned to 64 bytes (the local
/// header's extra field pads it, as PyTorch's own writer does), no zip64.
#[derive(Default)]
struct ZipWriter {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

const ALIGN: usize = 64;

impl ZipWriter {
    fn add(&mut self, name: &str, data: &[u8]) {
        let crc = crc32(data);
        let offset = self.out.len() as u32;
        let header_len = 30 + name.len() + 4; // + the extra field's own header
        let pad = (ALIGN - (self.out.len() + header_len) % ALIGN) % ALIGN;
        let o = &mut self.out;
        o.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        o.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, stored, time, date
        o.extend_from_slice(&crc.to_le_bytes());
        o.extend_from_slice(&(data.len() as u32).to_le_bytes());
        o.extend_from_slice(&(data.len() as u32).to_le_bytes());
        o.extend_from_slice(&(name.len() as u16).to_le_bytes());
        o.extend_from_slice(&((4 + pad) as u16).to_le_bytes());
        o.extend_from_slice(name.as_bytes());
        o.extend_from_slice(&0x4246u16.to_le_bytes()); // extra field id "FB", as PyTorch's
        o.extend_from_slice(&(pad as u16).to_le_bytes());
        o.extend(std::iter::repeat_n(b'Z', pad));
        o.extend_from_slice(data);

        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&[20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // made by, needed, flags, method, time, date
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(&(name.len() as u16).to_le_bytes());
        c.extend_from_slice(&[0; 12]); // extra, comment, disk, internal attrs, external attrs
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.entries += 1;
    }

    fn finish(self, mut w: impl Write) -> io::Result<()> {
        if self.out.len() + self.central.len() > u32::MAX as usize {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "over 4 GiB needs zip64"));
        }
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0; 4]); // disk numbers
        end.extend_from_slice(&self.entries.to_le_bytes());
        end.extend_from_slice(&self.entries.to_le_bytes());
        end.extend_from_slice(&(self.central.len() as u32).to_le_bytes());
        end.extend_from_slice(&(self.out.len() as u32).to_le_bytes());
        end.extend_from_slice(&[0; 2]); // comment length
        w.write_all(&self.out)?;
        w.write_all(&self.central)?;
        w.write_all(&end)?;
        w.flush()
    }
}

/// CRC-32 (IEEE), as zip uses.
fn crc32(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn storage_is_aligned_and_archive_is_well_formed() {
        let mut out = Vec::new();
        write_f32_matrix(&mut out, 2, 3, &[1., 2., 3., 4., 5., 6.]).unwrap();
        let raw: Vec<u8> =
            [1f32, 2., 3., 4., 5., 6.].iter().flat_map(|f| f.to_le_bytes()).collect();
        let at = out.windows(raw.len()).position(|w| w == raw).expect("storage bytes present");
        assert_eq!(at % ALIGN, 0);
        assert_eq!(&out[out.len() - 22..out.len() - 18], &0x0605_4b50u32.to_le_bytes());
        assert!(write_f32_matrix(&mut Vec::new(), 2, 2, &[1.0]).is_err());
    }
}
