//! Generated Rust code of agola's Protobuf contracts (`proto/agola/<area>/v1`). Clients and
//! servers are behind the `client` and `server` features. [`FILE_DESCRIPTOR_SET`] feeds gRPC
//! reflection. Never edit generated code: change the `.proto` files.

#![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]

/// Encoded `FileDescriptorSet` of every agola proto file, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/agola_descriptor.bin"));

pub mod agola {
    pub mod common {
        pub mod v1 {
            tonic::include_proto!("agola.common.v1");
        }
    }
    pub mod runservice {
        pub mod v1 {
            tonic::include_proto!("agola.runservice.v1");
        }
    }
    pub mod executor {
        pub mod v1 {
            tonic::include_proto!("agola.executor.v1");
        }
    }
    pub mod configstore {
        pub mod v1 {
            tonic::include_proto!("agola.configstore.v1");
        }
    }
    pub mod datamanager {
        pub mod v1 {
            tonic::include_proto!("agola.datamanager.v1");
        }
    }
    pub mod gateway {
        pub mod v1 {
            tonic::include_proto!("agola.gateway.v1");
        }
    }
}

pub use agola::{common, configstore, datamanager, executor, gateway, runservice};
