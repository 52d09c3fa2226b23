"""The Kopf operator that makes each WhatsAppChannel real.

`handlers` registers the Kopf handlers (and nothing else); `desired` computes the wanted
Secret and status as plain data; `channels` reconciles one channel; `channel_secrets` owns the
generated Secrets (cache, writes, drift repair); `sealing_keys` the operator's key pair;
`startup` the deliberate Kopf settings; `main` the console script.
"""
