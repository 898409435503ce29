"""The actors: one owner per resource. `account` (one account's order stream, book and
subscribers), `orders` (batches, single orders, recovery, the kill switch), `webhooks` (outbox and
delivery), `health` (what they report); shared rules in small modules beside them."""
