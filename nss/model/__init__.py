"""The MOST network as the rest of nss sees it: its outputs at full resolution, its losses, one step's loss, and
what it costs (parameters, FLOPs, the reference network every measurement builds)."""
