"""What every layer uses: atomic writes, JSON, file hashes and versions (`io`), progress bars (`progress`)."""
