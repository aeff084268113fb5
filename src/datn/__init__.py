"""datn: the Distributed Asset Trading Network.

Independent clearing nodes keep their own traders' accounts, find each other's
orders and trade with each other under short locks. This package holds the pure
trading core (``domain``, ``book``, ``ledger``, ``risk``) and the tools around it.
"""

__version__ = "0.1.0"
