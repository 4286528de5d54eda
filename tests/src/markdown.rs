//! The fenced code blocks of a Markdown document, found by the heading they sit under, so a
//! test can run the examples a document shows rather than copies of them that drift apart.

use anyhow::{bail, Result};

/// One fenced block: its info string's language (`sh`, `python`, empty when none), its text
/// (without the fences, the fence's indentation removed) and the line its opening fence is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeBlock {
    pub lang: String,
    pub text: String,
    pub line: usize,
}

/// The document at `path` under the workspace root (`README.md`, `docs/design.md`).
pub fn read(path: &str) -> Result<String> {
    let full = crate::paths::workspace_root().join(path);
    std::fs::read_to_string(&full).map_err(|e| anyhow::anyhow!("reading {}: {e}", full.display()))
}

/// The code blocks of the section that starts at the heading line `heading` (with its `#`s,
/// e.g. `## Calling Clever from your sync code`) and ends at the next heading of the same or a
/// higher level; subsections belong to it. A line inside a block is never taken for a heading
/// (a shell comment is one `#` away from one).
pub fn code_blocks_under(markdown: &str, heading: &str) -> Result<Vec<CodeBlock>> {
    let level = heading_level(heading).unwrap_or(0);
    if level == 0 {
        bail!("{heading:?} is not a Markdown heading");
    }
    let mut in_section = false;
    let mut found = false;
    let mut blocks = Vec::new();
    // The block being read: its opening fence's indentation, language, line and text so far.
    let mut open: Option<(usize, String, usize, Vec<&str>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((fence_indent, lang, start, mut text)) = open.take() {
            if trimmed.trim_end() == "```" {
                if in_section {
                    blocks.push(CodeBlock {
                        lang,
                        text: text.join("\n"),
                        line: start,
                    });
                }
            } else {
                text.push(&line[indent.min(fence_indent)..]);
                open = Some((fence_indent, lang, start, text));
            }
            continue;
        }
        if let Some(info) = trimmed.strip_prefix("```") {
            let lang = info.split_whitespace().next().unwrap_or("").to_string();
            open = Some((indent, lang, number, Vec::new()));
            continue;
        }
        if let Some(this_level) = heading_level(line) {
            if in_section && this_level <= level {
                break;
            }
            if line.trim_end() == heading {
                in_section = true;
                found = true;
            }
        }
    }
    if let Some((_, lang, start, _)) = open {
        bail!("the ```{lang} block opened on line {start} is never closed");
    }
    if !found {
        bail!("no heading {heading:?}");
    }
    Ok(blocks)
}

/// `Some(n)` for an ATX heading of level `n` (`## Title`), `None` for any other line.
fn heading_level(line: &str) -> Option<usize> {
    let hashes = line.len() - line.trim_start_matches('#').len();
    let rest = &line[hashes..];
    ((1..=6).contains(&hashes) && rest.starts_with(' ')).then_some(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
# Title

## First

```sh
# a comment, not a heading
echo one
```

## Second

text

  ```python
  print(2)
  ```

### Inside second

```
plain
```

## Third

```sh
echo three
```
";

    #[test]
    fn blocks_come_from_their_own_section_and_its_subsections_only() -> Result<()> {
        let second = code_blocks_under(DOC, "## Second")?;
        assert_eq!(
            second,
            [
                CodeBlock {
                    lang: "python".into(),
                    text: "print(2)".into(),
                    line: 14
                },
                CodeBlock {
                    lang: String::new(),
                    text: "plain".into(),
                    line: 20
                },
            ]
        );
        let first = code_blocks_under(DOC, "## First")?;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].text, "# a comment, not a heading\necho one");
        assert_eq!(code_blocks_under(DOC, "## Third")?[0].text, "echo three");
        Ok(())
    }

    #[test]
    fn a_missing_heading_or_an_unclosed_block_is_an_error() {
        assert!(code_blocks_under(DOC, "## Nowhere").is_err());
        assert!(code_blocks_under(DOC, "Second").is_err());
        assert!(code_blocks_under("## A\n\n```sh\necho\n", "## A").is_err());
    }
}
