"""The stand-in's HTTP server: Graph routes under `/{version}/...` (`routes`), the admin API
under `/_standin/...` (`admin`), Meta's own calls out (`caller`). Loopback only, both for
listening and for the callbacks it calls."""

from __future__ import annotations

import logging

from aiohttp import web

from .admin import AdminRoutes
from .routes import VERSION

log = logging.getLogger("graph_standin")


class GraphStandin(AdminRoutes):
    """The stand-in server. `start()` binds (port 0: a free one), `stop()` ends everything,
    including requests held by a `timeout` fault."""

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._graph_errors], client_max_size=1024 * 1024)
        admin = [
            web.post("/_standin/numbers", self._admin_seed),
            web.get("/_standin/numbers/{id}", self._admin_number),
            web.patch("/_standin/numbers/{id}", self._admin_patch),
            web.delete("/_standin/numbers/{id}", self._admin_delete),
            web.post("/_standin/numbers/{id}/faults", self._admin_add_fault),
            web.delete("/_standin/numbers/{id}/faults", self._admin_clear_faults),
            web.post("/_standin/numbers/{id}/messages", self._admin_send_text),
            web.get("/_standin/stats", self._admin_stats),
            web.post("/_standin/apps", self._admin_app),
            web.post("/_standin/signup", self._admin_signup),
            web.get("/_standin/sdk.js", self._sdk),
            web.get("/_standin/signup-frame", self._signup_frame),
            web.post("/_standin/sessions", self._open_popup),
            web.get("/_standin/sessions", self._popups),
            web.get("/_standin/sessions/{id}", self._popup),
            web.post("/_standin/reset", self._admin_reset),
            web.get("/_standin/app-callback", self._app_callback_challenge),
            web.post("/_standin/app-callback", self._app_callback_event),
        ]
        graph = [
            web.get(f"/{{version:{VERSION}}}/{{id}}/subscribed_apps", self._subscriptions),
            web.post(f"/{{version:{VERSION}}}/{{id}}/subscribed_apps", self._subscribe),
            web.post(f"/{{version:{VERSION}}}/{{id}}/register", self._register),
            web.delete(f"/{{version:{VERSION}}}/{{id}}/subscribed_apps", self._unsubscribe),
            web.get(f"/{{version:{VERSION}}}/{{id}}/phone_numbers", self._phone_numbers),
            web.get(f"/{{version:{VERSION}}}/debug_token", self._debug_token),
            web.get(f"/{{version:{VERSION}}}/app", self._app),
            web.get(f"/{{version:{VERSION}}}/oauth/access_token", self._exchange_code),
            web.get(f"/{{version:{VERSION}}}/{{id}}", self._get_node),
            web.post(f"/{{version:{VERSION}}}/{{id}}", self._post_node),
        ]
        app.add_routes(admin + graph)
        return app

    async def start(self) -> None:
        self._closing.clear()
        await self.caller.open()
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("Graph API stand-in listening on %s", self.url)

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.caller.close()
