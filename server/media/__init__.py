"""Media: receive publishers' RTP, forward it to subscribers without decoding, answer feedback.

Imports nothing from signaling, rooms or state: it is told "subscriber X takes publication Y"
and reports back through callbacks.
"""
