//! STUB (to be replaced): Content-Length and chunked request-body readers.
