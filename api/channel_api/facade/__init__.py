"""The REST facade: the public WhatsApp channel contract served on WhatsAppChannel resources.

`create_app(settings)` builds the FastAPI app; `main()` runs it under uvicorn.
"""

from channel_api.facade.app import create_app
from channel_api.facade.settings import FacadeSettings

__all__ = ["FacadeSettings", "create_app"]
