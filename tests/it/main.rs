//! Integration tests: the real `vikingsync` binary against the emulator over loopback HTTP.
//! One test binary (modules below) so the dependency graph links once.

mod adversarial_config;
mod adversarial_input;
mod cli;
mod crash;
mod demo;
mod flow;
mod harness;
mod hostile;
mod interop;
mod matrix;
mod objstore;
mod readers;
mod resume;
mod serve;
mod serve_hostile;
mod shard;
mod signals;
mod typing;
mod vectors;
