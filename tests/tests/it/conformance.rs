//! Tests of the conformance part of the API.
