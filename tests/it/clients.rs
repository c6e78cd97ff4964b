//! Real clients: curl resuming with -C -, aria2c downloading in 8 segments.
