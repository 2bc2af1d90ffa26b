//! Chat conversations → (ids, mask) with nanochat's rendering rules (`RustBPETokenizer.render_conversation`),
//! many conversations in parallel.
//!
//! The rules: `<|bos|>`, then messages alternating user / assistant from a user message; a leading system message
//! is merged into the user message after it (`system + "\n\n" + user`). A user message is
//! `<|user_start|> text <|user_end|>`, never trained on. An assistant message is `<|assistant_start|>` (not trained
//! on), its content (a string, or parts: `text`; `python` inside `<|python_start|>`/`<|python_end|>`, trained on;
//! `python_output` inside `<|output_start|>`/`<|output_end|>`, not trained on: it comes from the interpreter), then
//! `<|assistant_end|>` (trained on). Text is encoded as ordinary text (special-token names in it are plain text),
//! and each conversation is cut to its first `max_tokens` tokens.

use rayon::prelude::*;

use crate::arg_err;
use crate::encode::Encoder;
use crate::error::Result;

/// A message's role as given (checked while rendering, so that errors read like nanochat's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
    /// Neither a string nor a list: the Python type name, for the error.
    Other(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// `text`, `python` or `python_output` (others are an error when rendered).
    pub kind: String,
    pub text: String,
}

pub type Conversation = Vec<Message>;

/// The ids of the special tokens the rendering uses.
#[derive(Clone, Copy, Debug)]
pub struct ChatTokens {
    bos: u32,
    user: (u32, u32),
    assistant: (u32, u32),
    python: (u32, u32),
    output: (u32, u32),
}

impl ChatTokens {
    /// Look the chat tokens up in the encoder's special tokens; `bos` is given (nanochat's BOS may be another name).
    pub fn new(enc: &Encoder, bos: u32) -> Result<Self> {
        let id = |name: &str| {
            enc.specials().iter().find(|(n, _)| n == name).map(|&(_, id)| id).ok_or_else(|| {
                arg_err!("the tokenizer has no {name} token; rendering conversations needs nanochat's special tokens")
            })
        };
        let pair = |a: &str, b: &str| -> Result<(u32, u32)> { Ok((id(a)?, id(b)?)) };
        Ok(ChatTokens {
            bos,
            user: pair("<|user_start|>", "<|user_end|>")?,
            assistant: pair("<|assistant_start|>", "<|assistant_end|>")?,
            python: pair("<|python_start|>", "<|python_end|>")?,
            output: pair("<|output_start|>", "<|output_end|>")?,
        })
    }
}

/// Appends tokens and their mask value side by side.
struct Out<'a> {
    enc: &'a Encoder,
    ids: &'a mut Vec<u32>,
    mask: &'a mut Vec<u8>,
}

impl Out<'_> {
    fn token(&mut self, id: u32, m: u8) {
        self.ids.push(id);
        self.mask.push(m);
    }

    fn text(&mut self, text: &str, m: u8) -> Result<()> {
        let before = self.ids.len();
        self.enc.encode_ordinary_into(text, self.ids)?;
        self.mask.resize(self.mask.len() + (self.ids.len() - before), m);
        Ok(())
    }
}

/// Append one rendered conversation to `ids` / `mask` (at most `max_tokens` tokens).
pub fn render_into(
    enc: &Encoder,
    sp: &ChatTokens,
    conv: &[Message],
    max_tokens: usize,
    ids: &mut Vec<u32>,
    mask: &mut Vec<u8>,
) -> Result<()> {
    let start = ids.len();
    let merged;
    let messages: &[Message] = match conv.first() {
        None => return Err(arg_err!("Conversation has less than 1 message: []")),
        Some(first) if first.role == "system" => {
            let user = match conv.get(1) {
                Some(m) if m.role == "user" => m,
                _ => return Err(arg_err!("System message must be followed by a user message")),
            };
            let content = match (&first.content, &user.content) {
                (Content::Text(s), Content::Text(u)) => Content::Text(format!("{s}\n\n{u}")),
                _ => return Err(arg_err!("system and user messages must be strings to merge them")),
            };
            merged = [&[Message { role: "user".into(), content }], &conv[2..]].concat();
            &merged
        }
        Some(_) => conv,
    };
    let mut out = Out { enc, ids, mask };
    out.token(sp.bos, 0);
    for (i, message) in messages.iter().enumerate() {
        let must_be_from = if i % 2 == 0 { "user" } else { "assistant" };
        if message.role != must_be_from {
            return Err(arg_err!("Message {i} is from {} but should be from {must_be_from}", message.role));
        }
        if i % 2 == 0 {
            let Content::Text(text) = &message.content else {
                return Err(arg_err!("User messages are simply expected to be strings"));
            };
            out.token(sp.user.0, 0);
            out.text(text, 0)?;
            out.token(sp.user.1, 0);
            continue;
        }
        out.token(sp.assistant.0, 0);
        match &message.content {
            Content::Text(text) => out.text(text, 1)?,
            Content::Parts(parts) => {
                for part in parts {
                    match part.kind.as_str() {
                        "text" => out.text(&part.text, 1)?,
                        "python" => {
                            out.token(sp.python.0, 1);
                            out.text(&part.text, 1)?;
                            out.token(sp.python.1, 1);
                        }
                        "python_output" => {
                            out.token(sp.output.0, 0);
                            out.text(&part.text, 0)?;
                            out.token(sp.output.1, 0);
                        }
                        other => return Err(arg_err!("Unknown part type: {other}")),
                    }
                }
            }
            Content::Other(t) => return Err(arg_err!("Unknown content type: <class '{t}'>")),
        }
        out.token(sp.assistant.1, 1);
    }
    ids.truncate(start + max_tokens);
    mask.truncate(start + max_tokens);
    Ok(())
}

/// Render many conversations in parallel: all ids, all mask values, and `len + 1` offsets (conversation i is
/// `offsets[i]..offsets[i+1]`). Errors name the conversation.
pub fn render_batch(
    enc: &Encoder,
    sp: &ChatTokens,
    convs: &[Conversation],
    max_tokens: usize,
) -> Result<(Vec<u32>, Vec<u8>, Vec<i64>)> {
    let parts: Vec<(Vec<u32>, Vec<u8>)> = convs
        .par_iter()
        .enumerate()
        .map(|(i, c)| {
            let (mut ids, mut mask) = (Vec::new(), Vec::new());
            render_into(enc, sp, c, max_tokens, &mut ids, &mut mask).map_err(|e| arg_err!("conversation {i}: {e}"))?;
            Ok((ids, mask))
        })
        .collect::<Result<_>>()?;
    let total: usize = parts.iter().map(|(ids, _)| ids.len()).sum();
    let (mut ids, mut mask) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut offsets = Vec::with_capacity(convs.len() + 1);
    offsets.push(0i64);
    for (i, m) in parts {
        ids.extend_from_slice(&i);
        mask.extend_from_slice(&m);
        offsets.push(ids.len() as i64);
    }
    Ok((ids, mask, offsets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Vocab, NANOCHAT_SPECIALS};

    fn setup() -> (Encoder, ChatTokens) {
        let ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let specials: Vec<String> = NANOCHAT_SPECIALS.iter().map(|s| s.to_string()).collect();
        let v = Vocab::new("nanochat", ranks, &specials, 0, None, serde_json::json!({})).unwrap();
        let enc = Encoder::new(&v).unwrap();
        let sp = ChatTokens::new(&enc, 256).unwrap();
        (enc, sp)
    }

    fn msg(role: &str, text: &str) -> Message {
        Message { role: role.into(), content: Content::Text(text.into()) }
    }

    #[test]
    fn renders_with_masks_and_merges_the_system_message() {
        let (enc, sp) = setup();
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        let conv = vec![msg("system", "s"), msg("user", "u"), msg("assistant", "a")];
        render_into(&enc, &sp, &conv, 100, &mut ids, &mut mask).unwrap();
        // bos, user_start, "s\n\nu", user_end, assistant_start, "a", assistant_end
        assert_eq!(ids, vec![256, 257, b's' as u32, 10, 10, b'u' as u32, 258, 259, b'a' as u32, 260]);
        assert_eq!(mask, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn tool_parts_and_truncation() {
        let (enc, sp) = setup();
        let parts = vec![
            Part { kind: "python".into(), text: "x".into() },
            Part { kind: "python_output".into(), text: "y".into() },
        ];
        let conv = vec![msg("user", ""), Message { role: "assistant".into(), content: Content::Parts(parts) }];
        let (ids, mask, off) = render_batch(&enc, &sp, &[conv.clone(), conv], 9).unwrap();
        let one = vec![256, 257, 258, 259, 261, b'x' as u32, 262, 263, b'y' as u32];
        assert_eq!(ids, [one.clone(), one].concat());
        assert_eq!(&mask[..9], &[0, 0, 0, 0, 1, 1, 1, 0, 0]);
        assert_eq!(off, vec![0, 9, 18]);
    }

    #[test]
    fn errors_name_the_conversation() {
        let (enc, sp) = setup();
        let bad = vec![msg("user", "a"), msg("user", "b")];
        let e = render_batch(&enc, &sp, &[vec![msg("user", "x")], bad], 10).unwrap_err().to_string();
        assert_eq!(e, "conversation 1: Message 1 is from user but should be from assistant");
        let e = render_batch(&enc, &sp, &[vec![]], 10).unwrap_err().to_string();
        assert!(e.contains("less than 1 message"), "{e}");
    }
}
