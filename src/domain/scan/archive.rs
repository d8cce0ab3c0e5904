//! A scan's report as a ZIP archive: named entries (the findings as JSON, the raw outputs of
//! its scanner), deflated, in memory. It reads no file and knows nothing of HTTP.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// An archive holding `entries` in order.
pub fn zip(entries: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(
            entries
                .iter()
                .any(|(_, bytes)| bytes.len() >= u32::MAX as usize),
        );
    for (name, bytes) in entries {
        writer
            .start_file(name.as_str(), options)
            .map_err(|e| e.to_string())?;
        writer.write_all(bytes).map_err(|e| e.to_string())?;
    }
    let cursor = writer.finish().map_err(|e| e.to_string())?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn entries_come_back_whole_and_in_order() {
        let entries = vec![
            ("findings.json".to_owned(), b"{\"issues\":[]}".to_vec()),
            ("raw/tcp.txt".to_owned(), vec![b'x'; 100_000]),
        ];
        let bytes = zip(&entries).unwrap();
        assert!(bytes.len() < 10_000, "deflated: {}", bytes.len());
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        for (i, (name, content)) in entries.iter().enumerate() {
            let mut file = archive.by_index(i).unwrap();
            assert_eq!(file.name(), name);
            let mut read = Vec::new();
            file.read_to_end(&mut read).unwrap();
            assert_eq!(&read, content);
        }
    }
}
