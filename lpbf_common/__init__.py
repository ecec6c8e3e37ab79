"""What every lpbf-edge package shares: the stage messages and the config section base; imports no lpbf package."""
