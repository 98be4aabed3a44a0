//! (signature: placeholder, being written.)
