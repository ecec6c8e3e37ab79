"""Synthetic LPBF builds: plate, parts, powder, scan texture, defects, cameras, simulated printer."""
