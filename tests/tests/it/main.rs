mod api;
mod jobs;
mod roundtrip;
mod storage;
