from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from concerts.urls import api_urlpatterns as concert_api
from config import accounts
from config.api import api_not_found
from config.health import healthz
from payments.urls import api_urlpatterns as payment_api
from queueing.urls import api_urlpatterns as queue_api
from wallet.urls import api_urlpatterns as wallet_api

api_v1 = [
    path("auth/register", accounts.RegisterApi.as_view(), name="api-register"),
    path("auth/token", accounts.TokenApi.as_view(), name="api-token"),
    path("auth/me", accounts.MeApi.as_view(), name="api-me"),
    *concert_api,
    *queue_api,
    *wallet_api,
    *payment_api,
]

urlpatterns = []
if settings.BENCH_ENDPOINTS:  # baselines for bench/, never on in production
    urlpatterns.append(path("", include("bench.baseline")))

urlpatterns += [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^api(/.*)?$", api_not_found),
    path("accounts/signup/", accounts.signup, name="signup"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=accounts.ThrottledAuthenticationForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("queueing.urls")),
    path("", include("wallet.urls")),
    path("", include("payments.urls")),
    path("", include("concerts.urls")),
]
