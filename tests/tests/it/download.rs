//! Tests of the download part of the API.
