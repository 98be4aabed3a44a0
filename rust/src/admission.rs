//! (admission: placeholder, being written.)
