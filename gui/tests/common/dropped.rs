//! A file dropped on the window, as eframe hands it to egui. Used by the GUI tests (through
//! `common`) and by the `transfer_frames` example (by path), which both drop real files on
//! the real app.

use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct Dropped(pub PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}
