//! solidgrid: a grid database modelled on the solidDB grid.
//!
//! See `ARCHITECTURE.md` for the parts and how a statement flows through them.

pub mod auth;
pub mod client;
pub mod config;
pub mod console;
pub mod engine;
pub mod error;
pub mod grid;
pub mod grid_client;
pub mod msglog;
pub mod node;
pub mod server;
pub mod sql;
pub mod storage;
pub mod tls;

/// Generated protobuf and gRPC code for `proto/solidgrid.proto`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("solidgrid.v1");

    /// Encoded file descriptor set, served by gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/solidgrid_descriptor.bin"));
}

/// The product version reported by `solid` and the status probe.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
