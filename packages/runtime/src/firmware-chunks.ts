/**
 * Largest chunk of a firmware image one UploadFirmwareChunk message carries (under gRPC's 4 MiB message
 * limit, with room for the envelope): the device service refuses a larger one, and the Node gateway and
 * iotctl split an image into chunks of this size.
 */
export const MAX_FIRMWARE_CHUNK_BYTES = 1024 * 1024;
