//! edgecam's integration tests, one binary so the support code (fakes of the KVS
//! services, a test PKI, viewers, the mosquitto and moto runners) compiles once. Each
//! module is one area; `support/` is shared.

mod support;

mod architecture;
mod areas;
mod audio;
mod audio_clips;
mod browser;
mod capture;
mod cli;
mod clips;
mod config_file;
mod daemon_recording;
mod detect;
mod first_run;
mod full_disk;
mod https;
mod iot_credentials;
mod kvs_signaling;
mod kvs_stream;
mod kvs_upload;
mod live;
mod mkv;
mod mqtt;
mod onvif;
mod privacy;
mod putmedia_fake;
mod readme;
mod recorder;
mod rtsp_server;
mod talk;
mod turn;
mod viewer_places;
mod web_auth;
mod web_limits;
