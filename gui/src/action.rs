//! What the user asked for during a frame. Views return these; the app applies them all
//! at the end of the frame (`ClassChatApp::apply`), so no view changes shared state or
//! talks to the network while the frame is being laid out.

use classchat_wire::{Conv, Fingerprint};

use crate::app::ThemeChoice;
use crate::ui::dialogs::Dialog;

#[must_use = "an action does nothing until the app applies it"]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    // ---- connect screen --------------------------------------------------------------
    /// Log in (or register) with what is in the connect form.
    LogIn {
        register: bool,
    },
    CancelLogin,
    /// The user accepted this server key.
    TrustServer {
        addr: String,
        fingerprint: Fingerprint,
    },
    /// The user refused the key: nothing is saved, nothing is sent.
    RejectServer,

    // ---- navigation ------------------------------------------------------------------
    Select(Conv),
    /// Alt+Up / Alt+Down: the previous or next conversation in the sidebar.
    SelectRelative(i32),
    OpenDm(String),
    OpenDialog(Dialog),
    CloseDialog,

    // ---- rooms -----------------------------------------------------------------------
    CreateRoom {
        name: String,
        topic: String,
        password: Option<String>,
    },
    RefreshRooms,
    JoinRoom {
        name: String,
        password: Option<String>,
    },
    LeaveRoom(String),
    RoomAdmin(AdminOp),

    // ---- messages --------------------------------------------------------------------
    Send {
        conv: Conv,
        text: String,
    },
    Broadcast(String),
    LoadOlder(Conv),
    RetryPending(u64),
    /// Drop a failed message and put its text back in the composer.
    DiscardPending(u64),

    // ---- end-to-end encryption -------------------------------------------------------
    /// Accept a DM contact's changed key (and send the message that was held back).
    AcceptKey {
        peer: String,
        then_send: Option<String>,
    },
    MarkVerified {
        peer: String,
        verified: bool,
    },
    /// Check the signatures of these messages: their rows are about to be shown.
    VerifyRows {
        conv: Conv,
        ids: Vec<classchat_wire::MessageId>,
    },
    /// Make a new identity key (the backup could not be opened; the user agreed).
    NewIdentity,
    ChangePassword {
        current: String,
        new: String,
    },

    // ---- files -----------------------------------------------------------------------
    /// Send these files to a conversation (dropped on the window, or picked).
    SendFiles {
        conv: Conv,
        paths: Vec<std::path::PathBuf>,
    },
    /// Open the native picker to send files to `conv`.
    Attach(Conv),
    /// Ask where to save `file`, then download it.
    Download {
        file: classchat_wire::FileInfo,
        conv: Conv,
    },
    /// Accept an offer: ask where to save, then download (which accepts it).
    AcceptOffer(classchat_wire::FileInfo),
    DeclineOffer(classchat_wire::FileInfo),
    CancelTransfer(crate::files::TransferId),
    /// Start a failed or cancelled transfer again; it resumes where it stopped.
    RetryTransfer(crate::files::TransferId),
    /// The download's destination exists and the user chose to replace it.
    ReplaceDownload(crate::files::TransferId),
    /// The destination exists: ask for another place.
    SaveElsewhere(crate::files::TransferId),
    ForgetTransfer(crate::files::TransferId),
    OpenPath(std::path::PathBuf),
    ShowInFolder(std::path::PathBuf),
    Thumbnail(classchat_wire::FileInfo),
    ToggleTransfers,

    // ---- sharing with classmates -------------------------------------------------------
    /// The shared folder and its switches, searches, fetches (see [`crate::sharing`]).
    Sharing(crate::sharing::SharingAction),

    // ---- replies, edits, reactions, search ----------------------------------------------
    Rich(crate::rich::RichAction),

    // ---- instructor tools ------------------------------------------------------------
    /// Room modes, mutes, exam mode, the audit log, questions, polls, office hours.
    Class(crate::class::ClassAction),

    // ---- settings --------------------------------------------------------------------
    SetTheme(ThemeChoice),
    SetNotifications(bool),
    LogOut,
}

/// What a room admin can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOp {
    Kick { room: String, user: String },
    Ban { room: String, user: String },
    Unban { room: String, user: String },
    ListBans { room: String },
    SetTopic { room: String, topic: String },
    SetPassword { room: String, password: Option<String> },
    HandOver { room: String, user: String },
}

impl AdminOp {
    pub fn into_request(self) -> classchat_wire::Request {
        use classchat_wire::Request;
        match self {
            AdminOp::Kick { room, user } => Request::Kick { room, user },
            AdminOp::Ban { room, user } => Request::Ban { room, user },
            AdminOp::Unban { room, user } => Request::Unban { room, user },
            AdminOp::ListBans { room } => Request::ListBans { room },
            AdminOp::SetTopic { room, topic } => Request::SetTopic { room, topic },
            AdminOp::SetPassword { room, password } => Request::SetRoomPassword { room, password },
            AdminOp::HandOver { room, user } => Request::HandOverAdmin { room, user },
        }
    }
}
