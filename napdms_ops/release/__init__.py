"""Releases of a stack's services: deploy a new image, roll back, and show what runs.

Stateless services deploy blue-green (the proxy switches between two colours), services behind
the proxy restart while the proxy holds requests, the rest are snapshotted first. The stack's
config changes through a `StackEngine` (the Automation API), the switch and drain talk to the
running proxy directly (`ProxyControl`), and each command is locked per stack and journalled.
"""
