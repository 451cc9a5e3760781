import time, http.server, threading
from playwright.sync_api import sync_playwright
html = b"<html><body style='margin:0'><div style='width:2560px;height:120000px;background:linear-gradient(red,blue)'></div></body></html>"
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header('content-type','text/html'); self.end_headers(); self.wfile.write(html)
    def log_message(self,*a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1",0),H); threading.Thread(target=srv.serve_forever,daemon=True).start()
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium")
    pg = b.new_page(viewport={"width":2560,"height":1000})
    pg.goto(f"http://127.0.0.1:{srv.server_address[1]}/")
    t=time.monotonic()
    png = pg.screenshot(full_page=True, clip={"x":0,"y":0,"width":2560,"height":3125}, scale="css", type="png")
    print("clip", time.monotonic()-t, len(png), int.from_bytes(png[16:20],'big'), int.from_bytes(png[20:24],'big'))
    dims = pg.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    print(dims)
    b.close()
