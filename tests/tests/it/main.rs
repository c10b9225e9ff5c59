mod api;
mod engine;
mod jobs;
mod roundtrip;
mod storage;
