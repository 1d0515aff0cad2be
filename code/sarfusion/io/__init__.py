"""Readers and writers: GDAL rasters (whole, windowed, atomic), SpaceNet CSV / GeoJSON / WKT."""
from sarfusion.io.atomic import atomic_path
from sarfusion.io.raster import (
    RasterInfo,
    RasterWriter,
    iter_windows,
    map_to_pixel,
    pixel_to_map,
    raster_info,
    read_raster,
    write_raster,
)

__all__ = [
    "RasterInfo",
    "RasterWriter",
    "atomic_path",
    "iter_windows",
    "map_to_pixel",
    "pixel_to_map",
    "raster_info",
    "read_raster",
    "write_raster",
]
