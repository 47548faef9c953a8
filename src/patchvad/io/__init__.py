"""Files and video: atomic writes, safe readers, video decoding and encoding."""
