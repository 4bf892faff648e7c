"""The seed loops every tile is img2img'd from: synthesised loops and the user seed library."""
