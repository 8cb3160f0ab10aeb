"""Face door access: detection, alignment, embedding, store, decision."""
