"""Diffie Shop: a small, production-shaped web shop used to exercise Diffie.

Standard library + psycopg 3 only, so it runs from Debian's packages (python3, python3-psycopg)::

    SHOP_DATABASE_URL=postgresql://postgres@127.0.0.1/shop python3 -m app.initdb
    SHOP_DATABASE_URL=postgresql://postgres@127.0.0.1/shop python3 -m app
"""

__version__ = "1.0.0"
