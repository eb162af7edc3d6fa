"""One construct per file; keyword-only typed parameters, read-only public attributes."""
