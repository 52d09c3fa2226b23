"""The Kopf operator that makes each WhatsAppChannel real.

`handlers` registers the Kopf handlers (and nothing else); `desired` computes the wanted
Secret and status as plain data; `reconcile` reconciles one channel; `channel_secrets` owns the
channel Secrets (cache, writes, drift repair); `keystore` the operator's sealing key pairs;
`startup` the deliberate Kopf settings; `main` the console script.
"""
