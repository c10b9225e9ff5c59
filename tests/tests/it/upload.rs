//! Tests of the upload part of the API.
