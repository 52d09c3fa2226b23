"""The webhook receiver: the URLs Meta's WhatsApp Cloud API calls.

It answers Meta's verification challenge, checks each event's signature against the
channel's app secret, and hands verified events to the instance; Meta gets 200 only once the
instance accepted. Channels come from a watch-fed cache of the Secrets the operator writes.
"""
