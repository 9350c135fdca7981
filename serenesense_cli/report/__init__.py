"""Reports over run folders: figures (matplotlib), Markdown and self-contained HTML."""
