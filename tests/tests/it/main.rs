mod access;
mod api;
mod encryption;
mod engine;
mod jobs;
mod roundtrip;
mod storage;
