//! The chat commands of file sharing, typed in the composer:
//!
//! - `/share on` / `/share off`: the "Share my files" switch;
//! - `/share FILE on` / `/share FILE off`: one file of the shared folder (FILE is its name
//!   or its path below the folder; it may hold spaces);
//! - `/shared`: the "Shared files" panel, and a summary of what is shared;
//! - `/whohas QUERY`: ask the room who shares a file whose name holds QUERY (or whose
//!   SHA-256 is QUERY, 64 hex digits).
//!
//! Any other text, including other words starting with `/`, is a message.

/// A sharing command typed in the composer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    ShareAll(bool),
    ShareFile {
        file: String,
        on: bool,
    },
    Shared,
    WhoHas(String),
    /// The command was recognised but its arguments were not: the words say how to use it.
    Usage(&'static str),
}

pub const SHARE_USAGE: &str = "Usage: /share on|off, or /share FILE on|off";
pub const WHOHAS_USAGE: &str = "Usage: /whohas PART-OF-A-FILE-NAME";

/// The command `text` holds, if it is one of ours.
pub fn parse(text: &str) -> Option<ChatCommand> {
    let text = text.trim();
    let (word, rest) = match text.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (text, ""),
    };
    match word.to_ascii_lowercase().as_str() {
        "/shared" if rest.is_empty() => Some(ChatCommand::Shared),
        "/shared" => Some(ChatCommand::Usage("Usage: /shared")),
        "/whohas" if rest.is_empty() => Some(ChatCommand::Usage(WHOHAS_USAGE)),
        "/whohas" => Some(ChatCommand::WhoHas(rest.to_owned())),
        "/share" => Some(share(rest)),
        _ => None,
    }
}

fn share(rest: &str) -> ChatCommand {
    let switch = |w: &str| match w.to_ascii_lowercase().as_str() {
        "on" => Some(true),
        "off" => Some(false),
        _ => None,
    };
    if let Some(on) = switch(rest) {
        return ChatCommand::ShareAll(on);
    }
    match rest.rsplit_once(char::is_whitespace) {
        Some((file, last)) if !file.trim().is_empty() => match switch(last) {
            Some(on) => ChatCommand::ShareFile { file: file.trim().to_owned(), on },
            None => ChatCommand::Usage(SHARE_USAGE),
        },
        _ => ChatCommand::Usage(SHARE_USAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sharing_commands_parse() {
        assert_eq!(parse("/share on"), Some(ChatCommand::ShareAll(true)));
        assert_eq!(parse("  /SHARE Off "), Some(ChatCommand::ShareAll(false)));
        assert_eq!(
            parse("/share lab notes 3.pdf off"),
            Some(ChatCommand::ShareFile { file: "lab notes 3.pdf".into(), on: false })
        );
        assert_eq!(
            parse("/share labs/lab3.csv on"),
            Some(ChatCommand::ShareFile { file: "labs/lab3.csv".into(), on: true })
        );
        assert_eq!(parse("/shared"), Some(ChatCommand::Shared));
        assert_eq!(parse("/whohas  lab3 "), Some(ChatCommand::WhoHas("lab3".into())));
    }

    #[test]
    fn bad_arguments_say_how_and_other_text_is_a_message() {
        assert_eq!(parse("/share"), Some(ChatCommand::Usage(SHARE_USAGE)));
        assert_eq!(parse("/share maybe"), Some(ChatCommand::Usage(SHARE_USAGE)));
        assert_eq!(parse("/share lab3.csv perhaps"), Some(ChatCommand::Usage(SHARE_USAGE)));
        assert_eq!(parse("/whohas"), Some(ChatCommand::Usage(WHOHAS_USAGE)));
        assert_eq!(parse("/shared x"), Some(ChatCommand::Usage("Usage: /shared")));
        assert_eq!(parse("/me waves"), None);
        assert_eq!(parse("share on"), None);
        assert_eq!(parse("/sharedfolder"), None);
    }
}
