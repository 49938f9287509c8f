//! Durable storage: the transaction log (`wal`) over a file-system seam (`logfs`), and the
//! database file (`db`).

pub mod db;
pub mod logfs;
pub mod wal;
