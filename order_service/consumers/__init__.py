"""The order service's consumers, one module per queue it reads: the saga on
`orders.inventory` (the inventory's answers), the read model on `orders.read-model`
(stock figures and every order's timeline) and the flash-sale ticket worker on
`flash-sale.requests`. Each module's `ROUTES` says which message types it reads and the
model each body must match."""
