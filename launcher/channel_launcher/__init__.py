"""The product on the local control plane (localkube): how each of its processes is started
(`product`), for `whatsapp-dev` (`dev`), the tests and the benchmarks. localkube itself knows
nothing of the product."""
