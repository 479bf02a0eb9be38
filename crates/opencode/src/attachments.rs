//! Passing a message's attachments to OpenCode.
//!
//! OpenCode's prompt accepts file parts (`{"type":"file","mime","url":"file://…","filename"}`;
//! the backend checks the running server's `/doc` OpenAPI with [`doc_accepts_file_parts`] and
//! falls back to path notes for all attachments when it does not). For a `text/plain` part the server runs its
//! Read tool on the file and puts the content in the conversation; for an image it sends the
//! bytes to the model. Anything else would be sent to the model as an opaque file, which most
//! OpenAI-compatible providers refuse, and a binary file sent as text makes the Read tool fail
//! — so only text and common images become file parts, and every other attachment (or one that
//! cannot be read) becomes a path note in the prompt
//! ([`acg_core::prompt::with_attachment_notes`]), which the agent can follow with its tools.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::http::encode_component;

/// How many bytes are inspected to tell text from binary.
const SNIFF_BYTES: usize = 64 * 1024;

/// How one attachment is passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    /// As a native file part with this MIME type.
    FilePart {
        /// The absolute path.
        path: PathBuf,
        /// `text/plain` or `image/…`.
        mime: String,
    },
    /// As a path note in the prompt text.
    Note(PathBuf),
}

/// The image types models commonly accept, by extension.
fn image_mime(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => return None,
    })
}

/// True when the file's first bytes are UTF-8 text without NUL bytes (a multi-byte character
/// cut at the sniffing limit still counts as text).
fn looks_like_text(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    if file
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .is_err()
    {
        return false;
    }
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(&head) {
        Ok(_) => true,
        // Only an incomplete character at the very end is acceptable.
        Err(e) => e.error_len().is_none() && head.len() == SNIFF_BYTES,
    }
}

/// Decides how to pass `path` (relative paths are taken from `working_directory`).
pub fn classify(path: &Path, working_directory: &Path) -> Attachment {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        working_directory.join(path)
    };
    if !absolute.is_file() {
        return Attachment::Note(path.to_path_buf());
    }
    if let Some(mime) = image_mime(&absolute) {
        return Attachment::FilePart {
            path: absolute,
            mime: mime.to_owned(),
        };
    }
    if looks_like_text(&absolute) {
        return Attachment::FilePart {
            path: absolute,
            mime: "text/plain".to_owned(),
        };
    }
    Attachment::Note(path.to_path_buf())
}

/// A `file://` URL for an absolute path (each segment percent-encoded).
pub fn file_url(path: &Path) -> String {
    let encoded: Vec<String> = path
        .to_string_lossy()
        .split('/')
        .map(encode_component)
        .collect();
    format!("file://{}", encoded.join("/"))
}

/// The prompt's file part for a native attachment.
pub fn file_part(path: &Path, mime: &str) -> Value {
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    json!({"type": "file", "mime": mime, "url": file_url(path), "filename": filename})
}

/// True when an OpenAPI document (the server's `GET /doc`) lists a file part among the
/// `parts` of `POST /session/{sessionID}/prompt_async` (a `FilePartInput` with `type: "file"`,
/// `mime` and `url`).
pub fn doc_accepts_file_parts(doc: &Value) -> bool {
    let parts = doc.pointer(
        "/paths/~1session~1{sessionID}~1prompt_async/post/requestBody/content/application~1json/schema/properties/parts/items",
    );
    let Some(parts) = parts else {
        return false;
    };
    let variants: Vec<&Value> = match parts.get("anyOf").or_else(|| parts.get("oneOf")) {
        Some(Value::Array(list)) => list.iter().collect(),
        _ => vec![parts],
    };
    variants.iter().any(|variant| {
        let schema = match variant.get("$ref").and_then(Value::as_str) {
            Some(reference) => reference
                .strip_prefix("#/components/schemas/")
                .and_then(|name| doc.pointer(&format!("/components/schemas/{name}"))),
            None => Some(*variant),
        };
        schema.is_some_and(|schema| {
            let props = schema.get("properties");
            let is_file = props
                .and_then(|p| p.pointer("/type/enum"))
                .and_then(Value::as_array)
                .is_some_and(|e| e.iter().any(|v| v == "file"));
            is_file
                && props.and_then(|p| p.get("url")).is_some()
                && props.and_then(|p| p.get("mime")).is_some()
        })
    })
}

/// Splits attachments into file parts and the paths that need a note in the prompt.
pub fn plan(attachments: &[PathBuf], working_directory: &Path) -> (Vec<Value>, Vec<PathBuf>) {
    let mut parts = Vec::new();
    let mut notes = Vec::new();
    for path in attachments {
        match classify(path, working_directory) {
            Attachment::FilePart { path, mime } => parts.push(file_part(&path, &mime)),
            Attachment::Note(path) => notes.push(path),
        }
    }
    (parts, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_images_and_binaries_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("notes.md"), "# héllo\n").unwrap();
        std::fs::write(d.join("blob.bin"), [0u8, 159, 146, 150]).unwrap();
        std::fs::write(d.join("latin1.txt"), [b'c', b'a', 0xe9, b'\n']).unwrap();
        std::fs::write(d.join("pic.PNG"), [0x89, b'P', b'N', b'G', 0]).unwrap();
        assert_eq!(
            classify(Path::new("notes.md"), d),
            Attachment::FilePart {
                path: d.join("notes.md"),
                mime: "text/plain".into()
            }
        );
        assert_eq!(
            classify(&d.join("pic.PNG"), d),
            Attachment::FilePart {
                path: d.join("pic.PNG"),
                mime: "image/png".into()
            }
        );
        assert_eq!(
            classify(&d.join("blob.bin"), d),
            Attachment::Note(d.join("blob.bin"))
        );
        assert_eq!(
            classify(&d.join("latin1.txt"), d),
            Attachment::Note(d.join("latin1.txt"))
        );
        assert_eq!(
            classify(Path::new("/nonexistent/x.txt"), d),
            Attachment::Note("/nonexistent/x.txt".into())
        );
    }

    #[test]
    fn a_character_cut_at_the_sniff_limit_is_still_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        let mut text = "a".repeat(SNIFF_BYTES - 1);
        text.push('é');
        std::fs::write(&path, text).unwrap();
        assert!(looks_like_text(&path));
    }

    #[test]
    fn the_openapi_document_tells_whether_file_parts_are_accepted() {
        let doc = |variants: Value| {
            json!({
                "paths": {"/session/{sessionID}/prompt_async": {"post": {"requestBody": {"content": {
                    "application/json": {"schema": {"properties": {"parts": {"items": {"anyOf": variants}}}}}
                }}}}},
                "components": {"schemas": {
                    "TextPartInput": {"properties": {"type": {"enum": ["text"]}, "text": {}}},
                    "FilePartInput": {"properties": {"type": {"enum": ["file"]}, "mime": {}, "url": {}}}
                }}
            })
        };
        let text = json!({"$ref": "#/components/schemas/TextPartInput"});
        let file = json!({"$ref": "#/components/schemas/FilePartInput"});
        assert!(doc_accepts_file_parts(&doc(json!([text, file]))));
        assert!(!doc_accepts_file_parts(&doc(json!([text]))));
        assert!(!doc_accepts_file_parts(&json!({"paths": {}})));
    }

    #[test]
    fn file_parts_have_encoded_urls() {
        let part = file_part(Path::new("/tmp/my file#1.txt"), "text/plain");
        assert_eq!(
            part,
            json!({"type": "file", "mime": "text/plain",
                "url": "file:///tmp/my%20file%231.txt", "filename": "my file#1.txt"})
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "x").unwrap();
        let (parts, notes) = plan(
            &[dir.path().join("a.txt"), PathBuf::from("/missing.pdf")],
            dir.path(),
        );
        assert_eq!(parts.len(), 1);
        assert_eq!(notes, vec![PathBuf::from("/missing.pdf")]);
    }
}
