//! Messages and services generated from our own subset of Thanos' protos
//! (`proto/thanos/*.proto`, field numbers as in Thanos v0.42.4).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("thanos");

/// `thanos.info`: the Info service.
pub mod info {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("thanos.info");
}
